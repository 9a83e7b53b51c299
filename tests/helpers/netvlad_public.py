"""The public NetVLAD code's way of reading a dbStruct, re-implemented for tests (not shipped).

pytorch-NetVlad and the projects derived from it read ``mat['dbStruct'].item()`` *by position*
with ``scipy.io.loadmat`` defaults and use the counts as Python ints. Our writer must produce
files that this style of reader accepts.
"""

from __future__ import annotations

import numpy as np
import scipy.io


def netvlad_positional_reader(path) -> dict:
    """The public NetVLAD reader's way (pytorch-NetVlad): fields by *position*, default loadmat,
    and the counts used as that code uses them: in ``range()`` and as slice bounds (a float
    count raises TypeError there, as it did on our files before they stored integers)."""
    m = scipy.io.loadmat(path)["dbStruct"].item()
    shift = 1 if len(m) == 12 else 0  # TokyoTM: dbTimeStamp at 3, qTimeStamp at 6
    out = {
        "whichSet": m[0].item(),
        "dbImage": [f[0].item() for f in m[1]],
        "utmDb": m[2].T,
        "qImage": [f[0].item() for f in m[3 + shift]],
        "utmQ": m[4 + shift].T,
        "numDb": m[5 + 2 * shift].item(),
        "numQ": m[6 + 2 * shift].item(),
        "posDistThr": m[7 + 2 * shift].item(),
        "posDistSqThr": m[8 + 2 * shift].item(),
        "nonTrivPosDistSqThr": m[9 + 2 * shift].item(),
    }
    if shift:
        out["dbTimeStamp"], out["qTimeStamp"] = m[3].ravel(), m[6].ravel()
    # pytorch-NetVlad: `for i in range(numQ)` and `dbFeat = feats[:numDb]; qFeat = feats[numDb:]`
    feats = np.arange(out["numDb"] + out["numQ"])
    assert list(range(out["numQ"])) == list(range(len(out["qImage"])))
    assert len(feats[: out["numDb"]]) == len(out["dbImage"])
    assert len(feats[out["numDb"] :]) == len(out["qImage"])
    return out
