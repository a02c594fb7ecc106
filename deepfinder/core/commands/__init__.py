"""The ``deepfinder`` commands, one module each: ``add_parser(subparsers)`` defines the command's
options, ``run(args)`` reads its files' names and settings from them and calls the engine's step."""
