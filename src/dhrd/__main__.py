from .cli.entry_point import main

main()
