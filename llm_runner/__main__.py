from llm_runner.ops.cli import main

if __name__ == "__main__":
    main()
