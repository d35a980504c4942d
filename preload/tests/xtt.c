#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
#define DIE(x) do{fprintf(stderr,"%s: %s\n",x,strerror(errno));exit(1);}while(0)
int main(int argc,char**argv){
  if(argc<2)return 2;
  if(!strcmp(argv[1],"server")){ /* server PORT [BINDIP]: echo one connection */
    int l=socket(AF_INET,SOCK_STREAM,0); if(l<0)DIE("socket");
    int one=1; setsockopt(l,SOL_SOCKET,SO_REUSEADDR,&one,sizeof one);
    struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(atoi(argv[2]))};
    if(argc>3) inet_pton(AF_INET,argv[3],&a.sin_addr);
    if(bind(l,(void*)&a,sizeof a))DIE("bind");
    if(listen(l,16))DIE("listen");
    printf("listening\n");fflush(stdout);
    socklen_t al=sizeof a; int c=accept(l,(void*)&a,&al); if(c<0)DIE("accept");
    char ip[32];printf("accepted %s:%d len %u\n",inet_ntop(AF_INET,&a.sin_addr,ip,32),ntohs(a.sin_port),al);fflush(stdout);
    static char buf[65536]; long tot=0; ssize_t n;
    while((n=recv(c,buf,sizeof buf,0))>0){ tot+=n; char*p=buf; while(n>0){ssize_t w=send(c,p,n,0); if(w<0)DIE("send"); p+=w;n-=w;} }
    if(n<0)DIE("recv");
    printf("eof after %ld bytes\n",tot);
    close(c); close(l); return 0;
  }
  if(!strcmp(argv[1],"client")){ /* client IP PORT BYTES */
    int s=socket(AF_INET,SOCK_STREAM,0); if(s<0)DIE("socket");
    struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(atoi(argv[3]))};
    inet_pton(AF_INET,argv[2],&a.sin_addr);
    double t0=now();
    if(connect(s,(void*)&a,sizeof a))DIE("connect");
    printf("connected in %.3f ms\n",(now()-t0)*1e3);fflush(stdout);
    long total=atol(argv[4]); static char out[65536],in[65536]; long sent=0,rcvd=0; unsigned seed=1,rseed=1;
    t0=now();
    /* interleave: send a chunk, read what is there */
    while(rcvd<total){
      if(sent<total){ long k=total-sent<(long)sizeof out?total-sent:(long)sizeof out; for(long i=0;i<k;i++)out[i]=(char)((sent+i)*7+seed);
        ssize_t w=send(s,out,k,0); if(w<0)DIE("send"); sent+=w; }
      ssize_t r=recv(s,in,sizeof in,sent<total?MSG_DONTWAIT:0);
      if(r<0){ if(errno==EAGAIN)continue; DIE("recv");}
      if(r==0){fprintf(stderr,"early eof at %ld\n",rcvd);return 1;}
      for(long i=0;i<r;i++) if(in[i]!=(char)((rcvd+i)*7+rseed)){fprintf(stderr,"mismatch at %ld\n",rcvd+i);return 1;}
      rcvd+=r;
    }
    double dt=now()-t0;
    printf("echoed %ld bytes in %.3f s (%.1f MB/s)\n",total,dt,total/dt/1e6);
    shutdown(s,SHUT_WR); char c; ssize_t r=recv(s,&c,1,0); printf("after shutdown recv=%zd\n",r);
    close(s); return 0;
  }
  return 2;
}
