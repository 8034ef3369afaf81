"""Loads pulled export files with `datasets` and checks them with TRL's data utilities (run by tests/trl_side.py).

    python tests/trl_check.py SFT_FOLDER PREFERENCE_FOLDER

Each folder is a pulled export version (data.parquet, data.jsonl). Prints a JSON summary as its last line and
exits non-zero (an AssertionError) on the first row TRL does not read as the layout its trainers expect.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from datasets import load_dataset  # type: ignore[import-not-found,unused-ignore]
from trl import data_utils  # type: ignore[import-not-found,unused-ignore]


def main(sft_folder: Path, preference_folder: Path) -> None:
    summary: dict[str, int] = {}
    for kind, folder in (("sft", sft_folder), ("preference", preference_folder)):
        for fmt, name in (("parquet", "data.parquet"), ("json", "data.jsonl")):
            rows = load_dataset(fmt, data_files=str(folder / name), split="train")
            assert rows.num_rows > 0, f"{kind} {name}: no rows"
            for row in rows:
                assert data_utils.is_conversational(row), f"{kind} {name}: not conversational: {row}"
            summary[f"{kind}_{fmt}"] = rows.num_rows
            if kind == "preference":
                # an explicit prompt stays as it is; the pairs unpair into prompt/completion/label rows
                for row in rows.select(range(min(50, rows.num_rows))):
                    assert data_utils.maybe_extract_prompt(row) == row, f"prompt not explicit: {row}"
                unpaired = data_utils.unpair_preference_dataset(rows.select_columns(["prompt", "chosen", "rejected"]))
                assert unpaired.num_rows == 2 * rows.num_rows
                for row in unpaired:
                    assert data_utils.is_conversational(row) and row["completion"][0]["role"] == "assistant", row
                summary[f"unpaired_{fmt}"] = unpaired.num_rows
    print(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
