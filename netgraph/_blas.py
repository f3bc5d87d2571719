"""One BLAS thread (a context manager) for the metrics and SynFlow's iterations, with the loaded
libraries found once."""

from __future__ import annotations

import scipy.linalg  # noqa: F401  (loads scipy's BLAS before the libraries are listed)
from threadpoolctl import ThreadpoolController

_CONTROLLER: list = []


def one_blas_thread():
    """``with one_blas_thread(): ...`` runs BLAS on one thread (threadpoolctl).

    The controller that lists the loaded BLAS libraries is made on first use and kept: a
    fresh ``threadpool_limits`` lists them again each time (about 17 ms).
    """
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")
