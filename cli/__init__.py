"""The ``conectado`` command line: wiring only, domain work lives in the packages below."""
