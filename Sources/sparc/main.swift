print("sparc")
