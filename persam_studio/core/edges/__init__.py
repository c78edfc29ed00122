"""Edges and compositing: trimap, alpha matting (hair and fur), backgrounds."""
