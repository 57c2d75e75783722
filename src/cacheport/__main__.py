from cacheport.cli import main

main()
