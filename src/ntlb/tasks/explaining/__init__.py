"""Explaining image files and image datasets: files (a folder or list of images), dataset (sharded, resumable),
folders (reading image-folder datasets)."""
