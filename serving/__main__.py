import sys

from serving import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported

if __name__ == "__main__":
    from serving import forkserver

    forkserver.context()  # its imports run while the server's do

from serving.server import main  # noqa: E402

if __name__ == "__main__":  # model processes (serving/worker.py) must not run the server again
    sys.exit(main(sys.argv[1:]))
