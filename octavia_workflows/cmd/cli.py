"""Console script ``octavia-workflow``."""

import sys


def main():
    from octavia_workflows.cli import app

    sys.exit(app.main())


if __name__ == '__main__':
    main()
