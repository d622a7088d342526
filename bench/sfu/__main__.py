import sys

if sys.argv[1:2] == ["janus-compare"]:
    from .compare import main as compare

    del sys.argv[1]
    compare()
else:
    from .run import main

    main()
