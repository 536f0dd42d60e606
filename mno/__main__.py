from mno.cli import main

main()
