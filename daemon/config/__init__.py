"""The site: which instruments the daemon drives and how (``site.yaml`` -> ``Site``).

* ``daemon.config.model``: the typed model, its rules and JSON Schema;
* ``daemon.config.load``: ``load_site`` / ``load_site_text`` -> ``Site`` or diagnostics
  (file, line, column, field path, hint), bounded reading, file checks;
* ``daemon.config.defaults``: the embedded default site (``cellfab sim``'s twins) and
  ``sim_site`` for a running SimCell;
* ``daemon.config.build``: ``build_drivers(site)``, the one mapping from a site to
  driver objects (imported on its own: it loads the protocol libraries);
* ``daemon.cli.site``: ``cellfab site validate|show|schema``.
"""

from daemon.config.defaults import default_site, sim_site
from daemon.config.load import SiteError, load_site, load_site_text
from daemon.config.model import Site

__all__ = ["Site", "SiteError", "default_site", "load_site", "load_site_text", "sim_site"]
