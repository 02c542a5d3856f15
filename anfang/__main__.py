from anfang.cli import main

main()
