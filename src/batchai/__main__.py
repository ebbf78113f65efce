from batchai.cli.main import main

main()
