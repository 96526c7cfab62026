"""A training script for a sweep's ``command`` template (tests/test_user_trainer.py): curve points
as JSON lines, the result as the last line. ``--fail`` exits 3 with a message on stderr."""

import argparse
import json
import math
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--depth", type=int, required=True)
parser.add_argument("--fail", action="store_true")
args = parser.parse_args()
if args.fail:
    print("out of cheese", file=sys.stderr)
    sys.exit(3)
loss = 3.0 + 0.1 * (math.log2(args.lr) + 7) ** 2 - 0.01 * args.depth
print("starting")  # a script's own output is not a curve point
print(json.dumps({"step": 5, "train_loss": loss + 0.5, "val_loss": loss + 0.4}))
print(json.dumps({"step": 10, "train_loss": loss + 0.1, "val_loss": loss}))
trial = json.loads(os.environ["COMPLETEP_TRIAL"])
print(json.dumps({"final_val_loss": loss, "n_params": len(trial["rules"]["groups"])}))
