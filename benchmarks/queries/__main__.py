from benchmarks.queries.main import main

main()
