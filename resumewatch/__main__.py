from resumewatch.cli import main

main()
