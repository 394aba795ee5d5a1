# cmake -DSRC=<package dir> -DDST=<build package dir> -P link_package.cmake
# Symlinks every entry of SRC into DST (DST keeps its own files: the built _C module).
file(MAKE_DIRECTORY ${DST})
file(GLOB _entries RELATIVE ${SRC} ${SRC}/*)
foreach(_e IN LISTS _entries)
  if(_e STREQUAL "__pycache__")
    continue()
  endif()
  if(NOT EXISTS ${DST}/${_e})
    file(CREATE_LINK ${SRC}/${_e} ${DST}/${_e} SYMBOLIC)
  endif()
endforeach()
