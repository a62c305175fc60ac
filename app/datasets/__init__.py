"""Datasets as data, shared by the API and the worker: the upload formats (parsing, csv_upload,
npz_upload, images_zip_upload, chosen by formats). Nothing here imports torch or FastAPI."""
