from vitopt.cli import main

main()
