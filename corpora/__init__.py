"""The corpora that ship with charlstm: catalogue.json and the texts it names (data only;
charlstm.corpus reads them). Installed as the package charlstm.corpora."""
