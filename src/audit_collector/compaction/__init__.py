"""Closed days of raw JSON Lines, rewritten as Parquet exactly once: the SQL both engines run
(``sql``), the rules both runners follow (``rules``: which days are closed, the watermark, source
digests), DuckDB on a laptop (``local``) and Athena in AWS (``athena``). Never talks to an API.
"""
