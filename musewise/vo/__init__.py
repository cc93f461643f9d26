"""Virtual Observatory access to the releases: TAP, ObsCore 1.1 and DataLink, through the hub.

The VO protocols are served by GAVO DaCHS (:mod:`musewise.vo.dachs`), a maintained VO
server, not by musewise: musewise decides what each audience may see
(:mod:`musewise.vo.publish`) and who asks (:mod:`musewise.vo.gateway`, the hub's ``vo``
service). :mod:`musewise.vo.service` runs the whole: a PostgreSQL server, the two data
centres and the gateway, started by ``musewise hub`` like every other service.

Layering: this package sits above :mod:`musewise.release` and the archive, and nothing
below imports it.
"""

from .dachs import DachsServer, dachs_available
from .publish import AUDIENCES, Publication, audience_archive, publish

__all__ = ["AUDIENCES", "DachsServer", "Publication", "audience_archive", "dachs_available", "publish"]
