"""Send commands to the running training, one per line (the seed's client).

Needs `COMMAND_CONTROLLER: {unauthenticated: true}` in default.yaml; `deepleaps send`
and `deepleaps.control.Client` speak the authenticated protocol.
"""

import socket
from struct import pack

host = "127.0.0.1"
port = 1568
client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.connect((host, port))

try:
    while True:
        data = input(":")
        length = pack(">Q", len(data.encode()))
        client_socket.sendall(length)
        client_socket.sendall(data.encode())
        ack = client_socket.recv(1)
        print("send ack ok")
except Exception as e:
    print(e)
    client_socket.close()
