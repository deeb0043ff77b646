"""`selfheal version`: the package version and where the collection is installed."""

from __future__ import annotations

import json

from selfheal import __version__


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "version", help="print versions and the installed collection's location"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def _collection_location() -> str | None:
    try:
        from ansible_collections.selfheal import core  # type: ignore[import-not-found]
    except ImportError:
        return None
    return next(iter(core.__path__), None)


def run(args) -> int:
    import ansible

    info = {
        "selfheal": __version__,
        "ansible_core": ansible.__version__ if hasattr(ansible, "__version__") else None,
        "collection": _collection_location(),
    }
    if info["ansible_core"] is None:
        from ansible.release import __version__ as core_version

        info["ansible_core"] = core_version
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:13} {value if value is not None else '(not found)'}")
    return 0
