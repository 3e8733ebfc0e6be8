from cxrbench.cli import main

main()
