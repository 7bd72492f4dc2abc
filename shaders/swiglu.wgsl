// TODO: not written yet
