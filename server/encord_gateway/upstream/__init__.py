"""Talking to Encord: the signed client, the six key operations, signing and the HTTP/1.1 transport."""
