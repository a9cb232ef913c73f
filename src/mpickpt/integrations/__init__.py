"""Optional integrations with simulation frameworks, each imported only when used
(``from mpickpt.integrations import devito``) and installed with its extra
(``pip install mpickpt[devito]``)."""
