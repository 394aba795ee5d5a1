# Runs the fault test under the launcher; passes when the launcher exits non-zero within
# LIMIT seconds and a rank printed the timeout message naming the lost rank (1) and the
# AllReduce it waited on. Arguments: -DLAUNCH=<launcher and its options, ;-separated>
# -DEXE=<fault binary> -DLIMIT=<seconds> [-DARGS=<its arguments>].
string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${LAUNCH} ${EXE} ${ARGS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${LIMIT})
string(TIMESTAMP t1 "%s")
math(EXPR took "${t1} - ${t0}")
set(all "${out}${err}")
message(STATUS "launcher exit: ${rc} after ${took} s\n${all}")
if(rc STREQUAL "0" OR rc MATCHES "timeout")
  message(FATAL_ERROR "the launcher exited with '${rc}': expected a non-zero exit within ${LIMIT} s")
endif()
if(NOT all MATCHES "rank [0-9]+: collective AllReduce of node 'fault_allreduce' \\([0-9]+ bytes, group world\\) timed out after [0-9.]+ s waiting for rank\\(s\\) 1 ")
  message(FATAL_ERROR "no timeout message naming rank 1 and node 'fault_allreduce'")
endif()
