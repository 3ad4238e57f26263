from .server import run

run()
