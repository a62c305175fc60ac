"""Datasets as data, shared by the API and the worker: the upload formats (parsing, csv_upload,
npz_upload, images_zip_upload, chosen by formats), and the stored format (stored, the one owner
of data.npz: written on upload, loaded into raw.RawData to train). Never imports FastAPI."""
