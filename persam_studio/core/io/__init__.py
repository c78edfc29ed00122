"""Files: images and masks in, masks and cutouts out, atomic writes, the album's state.

Nothing here imports torch; every write goes through :mod:`.atomic`.
"""
