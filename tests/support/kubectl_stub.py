"""A stand-in for kubectl (run through a `kubectl` wrapper on PATH): records its argv
(one JSON list per line) in $KUBECTL_RECORD and answers as kubectl does for the calls
e2ee-ops makes, in the mode $KUBECTL_MODE:

  ok (default)  rollout restart/status succeed; get endpoints prints $KUBECTL_ENDPOINTS
  missing       the resource does not exist (Error from server (NotFound), exit 1)
  stuck         rollout status waits its whole --timeout, then times out (exit 1)
"""

import json
import os
import sys
import time

args = sys.argv[1:]
with open(os.environ["KUBECTL_RECORD"], "a") as record:
    record.write(json.dumps(args) + "\n")
mode = os.environ.get("KUBECTL_MODE", "ok")
words = [a for a in args if not a.startswith("--")]
# Drop the values of --context and --namespace given as separate words.
for flag in ("--context", "--namespace"):
    if flag in args:
        words.remove(args[args.index(flag) + 1])

if words[:2] == ["rollout", "restart"]:
    kind, _, name = words[2].partition("/")
    if mode == "missing":
        print(f'Error from server (NotFound): {kind}s.apps "{name}" not found', file=sys.stderr)
        sys.exit(1)
    print(f"{kind}.apps/{name} restarted")
elif words[:2] == ["rollout", "status"]:
    kind, _, name = words[2].partition("/")
    timeout = next(a for a in args if a.startswith("--timeout="))
    if mode == "stuck":
        print(f'Waiting for {kind} "{name}" rollout to finish: 1 of 2 updated replicas...')
        sys.stdout.flush()
        time.sleep(float(timeout.removeprefix("--timeout=").removesuffix("s")))
        print("error: timed out waiting for the condition", file=sys.stderr)
        sys.exit(1)
    print(
        f'Waiting for {kind} "{name}" rollout to finish: 1 of 2 updated replicas are available...'
    )
    print(f'{kind} "{name}" successfully rolled out')
elif words[:2] == ["get", "endpoints"]:
    if mode == "missing":
        print(f'Error from server (NotFound): endpoints "{words[2]}" not found', file=sys.stderr)
        sys.exit(1)
    print(os.environ["KUBECTL_ENDPOINTS"])
else:
    print(f"error: unknown command {' '.join(args)!r}", file=sys.stderr)
    sys.exit(1)
