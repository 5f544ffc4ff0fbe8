module github.com/tidemark/tidemark/chaos-tests/porcupine

go 1.22

require github.com/anishathalye/porcupine v1.3.1
