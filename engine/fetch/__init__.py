"""``python -m engine fetch``: the official weights from the Hugging Face hub (or a mirror).

Why inside the engine: the Blender extension ships the engine, not ``tools/``; the add-on's
Download Weights button runs this same command. Split by job: :mod:`engine.fetch.hub` asks the
host what each file is (size, hash, where its bytes are), :mod:`engine.fetch.transfer` moves the
bytes into a staging folder beside the weights folder and places a file only once its size and
hash match; :mod:`engine.commands.fetch` plans, checks space, reports and verifies.
"""
