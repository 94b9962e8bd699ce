from metricloop.cli import main

main()
