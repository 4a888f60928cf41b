import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b=open('../rootDesc-igd2.xml','rb').read()
        self.send_response(200); self.send_header('Content-Type','text/xml'); self.send_header('Content-Length',str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_POST(self):
        n=int(self.headers.get('Content-Length','0')); body=self.rfile.read(n)
        with open('captured-%s.xml' % self.headers.get('SOAPAction','x').split('#')[-1].strip('"'),'wb') as f: f.write(body)
        with open('headers.txt','a') as f: f.write(str(self.headers)+'\n---\n')
        self.send_response(500); self.send_header('Content-Length','0'); self.end_headers()
    def log_message(self,*a): pass
http.server.HTTPServer(('127.0.0.1',5000),H).serve_forever()
