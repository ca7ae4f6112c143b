# tmp-files: leftovers of a configuration run
