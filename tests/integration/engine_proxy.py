"""A unix-socket proxy in front of the real Docker engine, which a test can
stop and start to make the engine vanish and come back, or freeze so it
accepts connections but never answers."""
import os
import select
import socket
import threading

ENGINE = "/var/run/docker.sock"


class EngineProxy:
    def __init__(self, path):
        self.path = path
        self.listener = None
        self.conns = []
        self.frozen = False
        self.lock = threading.Lock()

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self):
        """The engine is gone: refuse new connections, cut open ones."""
        with self.lock:
            if self.listener:
                self.listener.close()
                self.listener = None
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns = []
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.frozen:  # accept and never answer
                with self.lock:
                    self.conns.append(client)
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE)
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        socks = [a, b]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass
