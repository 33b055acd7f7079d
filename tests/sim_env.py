"""A ``.env`` file that points the CLI (and ``doctor``) at a running simulator."""

from __future__ import annotations

from pathlib import Path

from tradovate_async.sim import SimulatedTradovate, SimUser


def write_env(
    path: Path, sim: SimulatedTradovate, *, device_id: str = "cli-test-device", **changes: str
) -> Path:
    """Write the simulator's URLs and its default user's credentials to ``path``;
    ``changes`` replace or add variables."""
    user = SimUser()
    values = {
        "TRADOVATE_API_URL": sim.api_url,
        "TRADOVATE_WS_URL": sim.ws_url,
        "TRADOVATE_MD_URL": sim.md_url,
        "TRADOVATE_USERNAME": user.username,
        "TRADOVATE_PASSWORD": user.password,
        "TRADOVATE_APP_ID": user.app_id,
        "TRADOVATE_SEC": user.sec,
        "TRADOVATE_DEVICE_ID": device_id,
        "TRADOVATE_CID": str(user.cid),
    }
    values.update(changes)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path
