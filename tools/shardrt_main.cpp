// The command line: a thin dispatcher over the library (see src/api/cli.cpp).
int shardrt_cli_main(int argc, char** argv);
int main(int argc, char** argv) { return shardrt_cli_main(argc, argv); }
