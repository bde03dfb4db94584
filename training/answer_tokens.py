"""How many tokens the demo's five v6 answers take under tokenizers of other vocabulary sizes.

Trains the v6 corpus's tokenizer (line merges, seed 0, 60,000 reasoning pairs, as committed) at each
size and encodes the committed target's own answers (rep 0, Q8_0, depth 1, from a demo database).
CPU only, ~3 minutes; needs the `tokenizers` package, not the tool's.

    python training/answer_tokens.py benchmarks/runs/gemma4-mini-v6-cpu-demo-imatrix.db 4096 2048 1024 512
"""

import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402
from tokenizer import train_tokenizer  # noqa: E402


def main(db: str, sizes: list[int]) -> None:
    t0 = time.time()
    train, _, _ = corpus.load(0, 60000, None, "v6")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        answers = dict(conn.execute("SELECT prompt_id, content FROM requests WHERE model_label = 'Q8_0' AND "
                                    "depth = 1 AND rep = 0 AND status = 'ok'"))
    texts = [q + "\n" + a for q, a in train]
    for vocab in sizes:
        tok = train_tokenizer(texts, vocab, Path(f"/tmp/answer-tokens-{vocab}"), merges="lines")
        counts = {p.split("-", 2)[-1]: len(tok.encode(a).ids) for p, a in sorted(answers.items())}
        print(vocab, counts, "total", sum(counts.values()), f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(v) for v in sys.argv[2:]] or [4096, 2048, 1024, 512])
