from resumewatch.cli import main

# Guarded: the processes that validate for `resumewatch publish` import this module again.
if __name__ == "__main__":
    main()
