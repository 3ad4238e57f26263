"""Static files: served as Tornado serves them, but every error is JSON like the rest."""

from __future__ import annotations

from tornado.testing import gen_test

from .httpcase import AppCase, error_of


class StaticFilesTest(AppCase):
    @gen_test
    async def test_files_are_served(self) -> None:
        response = await self.request("GET", "/static/favicon.svg")
        assert response.code == 200 and response.body.startswith(b"<svg")
        response = await self.request("HEAD", "/static/favicon.svg")
        assert response.code == 200 and response.body == b""

    @gen_test
    async def test_missing_files_are_json_404(self) -> None:
        # favicon.ico and robots.txt are Tornado's own routes into the static folder.
        for path in ("/static/nope.css", "/favicon.ico", "/robots.txt"):
            response = await self.request("GET", path)
            assert response.code == 404, path
            assert error_of(response) == f"no such file: {path}"
            assert response.headers["Cache-Control"] == "no-store"

    @gen_test
    async def test_folder_is_json_403_and_other_methods_json_405(self) -> None:
        response = await self.request("GET", "/static/")
        assert response.code == 403 and "not a file" in error_of(response)
        response = await self.request("POST", "/static/favicon.svg", b"x")
        assert response.code == 405 and "POST" in error_of(response)
        assert response.headers["Allow"] == "GET, HEAD"

    @gen_test
    async def test_head_of_missing_file_has_no_body(self) -> None:
        response = await self.request("HEAD", "/static/nope.css")
        assert response.code == 404 and response.body == b""
