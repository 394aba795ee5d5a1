#include <cstdio>
int shardrt_cli_main(int, char**) { std::puts("shardrt: not yet"); return 1; }
