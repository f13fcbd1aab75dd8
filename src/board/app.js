// board client
