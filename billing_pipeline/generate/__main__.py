import sys

from billing_pipeline.generate.cli import main_generate

raise SystemExit(main_generate(sys.argv[1:]))
