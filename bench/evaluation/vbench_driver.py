"""Runs inside vbench's own environment (scripts/vbench_env.sh), started by vbench_runner: scores a
flat folder of clips with vbench 0.1.5's short-video kernels (custom_input mode, local weights).

    python vbench_driver.py REQUEST.json
    python vbench_driver.py --check REQUEST.json     imports only, before the harness generates anything

REQUEST: {"clips_dir", "output_dir", "name", "dimensions", "device", "error_file"} ("dimensions" and
"error_file" for --check). VBENCH_CACHE_DIR comes from the environment. Only the standard library and
vbench's own imports: this file must not import relaxbench. A dimension whose module cannot be imported
here is reported in error_file (exit 3).
"""

import importlib
import json
import os
import subprocess
import sys


def refuse_downloads() -> None:
    """vbench shells out to wget/git when a weight is missing; the harness checked every file first,
    so such a call is a bug: fail it instead of reaching the network."""
    real_run = subprocess.run

    def guarded_run(cmd, *args, **kwargs):
        program = os.path.basename(str(cmd[0] if isinstance(cmd, (list, tuple)) else cmd).split()[0])
        if program in ("wget", "curl", "git"):
            raise RuntimeError(f"vbench tried to download ({' '.join(map(str, cmd))}); relaxbench never downloads")
        return real_run(cmd, *args, **kwargs)

    subprocess.run = guarded_run
    import urllib.request

    def no_urlretrieve(url, *args, **kwargs):
        raise RuntimeError(f"vbench tried to download {url}; relaxbench never downloads")

    urllib.request.urlretrieve = no_urlretrieve


def import_dimensions(request: dict) -> None:
    for dim in request["dimensions"]:
        try:
            importlib.import_module(f"vbench.{dim}")
        except ImportError as err:
            with open(request["error_file"], "w") as f:
                f.write(f"vbench's {dim} cannot be imported in {sys.executable}: {err}")
            sys.exit(3)


def main(request_path: str, check_only: bool = False) -> None:
    with open(request_path) as f:
        request = json.load(f)
    refuse_downloads()
    import vbench
    from vbench import VBench

    import_dimensions(request)
    if check_only:
        return

    full_info = os.path.join(os.path.dirname(vbench.__file__), "VBench_full_info.json")
    VBench(request["device"], full_info, request["output_dir"]).evaluate(
        videos_path=request["clips_dir"],
        name=request["name"],
        dimension_list=request["dimensions"],
        local=True,
        mode="custom_input",
    )


if __name__ == "__main__":
    main(sys.argv[-1], check_only="--check" in sys.argv[1:-1])
