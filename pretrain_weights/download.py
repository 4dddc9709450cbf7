"""Download the pretrained weights listed in MANIFEST.yaml into pretrain_weights/<name>/.

    python pretrain_weights/download.py --list
    python pretrain_weights/download.py sam2.1-hiera-large lisa-7b-v1 [--out DIR]

Only safetensors/json/tokenizer files are fetched by default (``--allow-pickle`` adds *.bin/*.pth,
which mora never loads without conversion).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SAFE_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py.txt", "tokenizer*", "*.md"]
PICKLE_PATTERNS = ["*.bin", "*.pth", "*.pt"]


def load_manifest(path: Path = HERE / "MANIFEST.yaml") -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise ValueError(f"{path}: expected a mapping with a 'weights' section")
    for name, entry in data["weights"].items():
        if not isinstance(entry, dict) or "repo_id" not in entry:
            raise ValueError(f"{path}: entry {name!r} has no repo_id")
    return data["weights"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="manifest entries to download")
    parser.add_argument("--list", action="store_true", help="list the manifest entries and exit")
    parser.add_argument("--out", type=Path, default=HERE, help="parent folder (default: pretrain_weights/)")
    parser.add_argument("--allow-pickle", action="store_true", help="also fetch *.bin/*.pth files")
    args = parser.parse_args(argv)

    manifest = load_manifest()
    if args.list or not args.names:
        for name, entry in manifest.items():
            sys.stdout.write(
                f"{name:28s} {entry['repo_id']}@{entry.get('revision', 'main')}  {entry.get('used_by', '')}\n"
            )
        return 0
    unknown = [n for n in args.names if n not in manifest]
    if unknown:
        sys.stderr.write(f"error: unknown weight name(s) {unknown}; known: {sorted(manifest)}\n")
        return 2

    from huggingface_hub import snapshot_download

    patterns = SAFE_PATTERNS + (PICKLE_PATTERNS if args.allow_pickle else [])
    for name in args.names:
        entry = manifest[name]
        target = args.out / name
        try:
            snapshot_download(
                repo_id=entry["repo_id"],
                revision=entry.get("revision", "main"),
                local_dir=target,
                allow_patterns=patterns,
            )
        except Exception as exc:  # network/auth errors: report, don't traceback
            sys.stderr.write(f"error: could not download {name} ({entry['repo_id']}): {exc}\n")
            return 1
        sys.stdout.write(f"{name}: {target}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
