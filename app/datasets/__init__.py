"""Datasets as data, shared by the API and the worker: the upload formats (parsing, csv_upload,
npz_upload, images_zip_upload, chosen by formats), the stored format (stored, the one owner of
data.npz: written on upload, loaded into raw.RawData to train) and the builtin datasets, listed
once (builtin; the worker loads them with scikit-learn). Never imports FastAPI."""
