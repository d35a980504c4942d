#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>
static const char *PEER="10.66.0.2";
static int npipe, nalrm;
static void onpipe(int s){(void)s;npipe++;}
static void onalrm(int s){(void)s;nalrm++;}
#define R(expr) do{ errno=0; long _r=(long)(expr); printf("%-58s = %ld%s%s\n", #expr, _r, _r<0?" ":"", _r<0?strerrorname_np(errno):""); fflush(stdout);}while(0)
static struct sockaddr_in A(const char*ip,int port){struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port)};inet_pton(AF_INET,ip,&a.sin_addr);return a;}
static int conn(int port){int s=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a=A(PEER,port);if(connect(s,(void*)&a,sizeof a)){perror("conn");exit(1);}return s;}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  if(argc>1)PEER=argv[1];
  signal(SIGPIPE,onpipe);
  int s,v; socklen_t l; char buf[4096]; struct sockaddr_in a; 
  puts("== unconnected");
  s=socket(AF_INET,SOCK_STREAM,0);
  R(recv(s,buf,10,0)); R(send(s,"x",1,0)); printf("sigpipe=%d\n",npipe);
  l=sizeof a; R(getpeername(s,(void*)&a,&l)); l=sizeof a; R(getsockname(s,(void*)&a,&l)); printf("len=%u port=%d\n",l,ntohs(a.sin_port));
  R(shutdown(s,SHUT_WR)); R(listen(s,5)); 
  l=4; R(getsockopt(s,SOL_SOCKET,SO_ACCEPTCONN,&v,&l)); printf("acceptconn=%d\n",v);
  R(close(s));
  puts("== options");
  s=socket(AF_INET,SOCK_STREAM,0);
  l=4; R(getsockopt(s,SOL_SOCKET,SO_RCVBUF,&v,&l)); printf("rcvbuf=%d\n",v);
  v=1000; R(setsockopt(s,SOL_SOCKET,SO_RCVBUF,&v,4)); l=4; R(getsockopt(s,SOL_SOCKET,SO_RCVBUF,&v,&l)); printf("rcvbuf=%d\n",v);
  v=100000; R(setsockopt(s,SOL_SOCKET,SO_SNDBUF,&v,4)); l=4; R(getsockopt(s,SOL_SOCKET,SO_SNDBUF,&v,&l)); printf("sndbuf=%d\n",v);
  v=1; R(setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&v,4)); l=4; R(getsockopt(s,IPPROTO_TCP,TCP_NODELAY,&v,&l)); printf("nodelay=%d\n",v);
  l=4; R(getsockopt(s,IPPROTO_TCP,TCP_MAXSEG,&v,&l)); printf("maxseg=%d\n",v);
  v=0; R(setsockopt(s,IPPROTO_TCP,TCP_KEEPIDLE,&v,4)); v=5; R(setsockopt(s,IPPROTO_TCP,TCP_KEEPIDLE,&v,4));
  R(setsockopt(s,SOL_SOCKET,SO_SNDLOWAT,&v,4)); l=4; R(getsockopt(s,SOL_SOCKET,SO_SNDLOWAT,&v,&l)); printf("sndlowat=%d\n",v);
  l=4; R(getsockopt(s,SOL_SOCKET,SO_TYPE,&v,&l)); printf("type=%d\n",v);
  l=4; R(getsockopt(s,SOL_SOCKET,SO_PROTOCOL,&v,&l)); printf("proto=%d\n",v);
  l=4; R(getsockopt(s,SOL_SOCKET,SO_DOMAIN,&v,&l)); printf("domain=%d\n",v);
  R(setsockopt(s,SOL_SOCKET,SO_RCVBUF,&v,2)); R(setsockopt(s,SOL_SOCKET,SO_RCVBUF,(void*)8,4)); l=4; R(getsockopt(s,SOL_SOCKET,SO_RCVBUF,(void*)8,&l));
  { char cc[16]={0}; l=sizeof cc; R(getsockopt(s,IPPROTO_TCP,TCP_CONGESTION,cc,&l)); printf("cc=%s len=%u\n",cc,l); }
  R(close(s));
  puts("== blocking connect + data");
  s=conn(6001);
  l=sizeof a; R(getpeername(s,(void*)&a,&l)); printf("peer=%s:%d len=%u\n",inet_ntoa(a.sin_addr),ntohs(a.sin_port),l);
  l=8; R(getpeername(s,(void*)&a,&l)); printf("len=%u\n",l);
  l=-1; R(getpeername(s,(void*)&a,&l));
  l=16; R(getpeername(s,(void*)1,&l));
  R(connect(s,(void*)&a,sizeof a));
  { char cc[16]={0}; l=sizeof cc; R(getsockopt(s,IPPROTO_TCP,TCP_CONGESTION,cc,&l)); printf("cc=%s len=%u\n",cc,l); }
  R(send(s,"hello world",11,0)); usleep(100000);
  R(ioctl(s,FIONREAD,&v)); printf("inq=%d\n",v);
  R(ioctl(s,SIOCOUTQ,&v)); printf("outq=%d\n",v);
  R(recv(s,buf,5,MSG_PEEK)); R(recv(s,buf,100,0)); buf[11]=0; printf("got=%s\n",buf);
  R(send(s,"abcdefgh",8,0)); R(recv(s,buf,8,MSG_WAITALL));
  R(recv(s,buf,8,MSG_DONTWAIT));
  R(recv(s,NULL,0,MSG_DONTWAIT));
  R(read(s,buf,0));
  R(send(s,"abcdefgh",8,0)); usleep(50000); R(recv(s,NULL,8,0)); R(recv(s,buf,8,0));
  { struct iovec iv[3]={{buf,2},{buf+10,3},{buf+20,100}}; R(writev(s,iv,2)); usleep(50000); R(readv(s,iv,3)); R(writev(s,iv,-1)); }
  { struct msghdr m={0}; struct iovec iv={buf,100}; m.msg_iov=&iv; m.msg_iovlen=1; struct sockaddr_in na; m.msg_name=&na; m.msg_namelen=sizeof na; char ctl[64]; m.msg_control=ctl; m.msg_controllen=64;
    m.msg_control=0; m.msg_controllen=0; R(sendmsg(s,&m,0)); m.msg_control=ctl; m.msg_controllen=64; R(recvmsg(s,&m,0)); printf("namelen=%u controllen=%zu flags=%d\n",m.msg_namelen,m.msg_controllen,m.msg_flags); }
  { struct sockaddr_in fa; l=sizeof fa; R(send(s,"q",1,0)); R(recvfrom(s,buf,10,0,(void*)&fa,&l)); printf("fromlen=%u\n",l); }
  struct timeval tv={0,200000}; R(setsockopt(s,SOL_SOCKET,SO_RCVTIMEO,&tv,sizeof tv));
  { double t0=now(); R(recv(s,buf,10,0)); printf("timeout ok=%d\n", now()-t0>0.15 && now()-t0<0.5); }
  tv.tv_usec=2000000; R(setsockopt(s,SOL_SOCKET,SO_RCVTIMEO,&tv,sizeof tv));
  tv.tv_sec=0; tv.tv_usec=0; R(setsockopt(s,SOL_SOCKET,SO_RCVTIMEO,&tv,sizeof tv));
  { struct tcp_info ti; l=sizeof ti; R(getsockopt(s,IPPROTO_TCP,TCP_INFO,&ti,&l)); printf("state=%d len_ok=%d mss_ok=%d\n",ti.tcpi_state, l>=104, ti.tcpi_snd_mss>500); }
  l=4; R(getsockopt(s,SOL_SOCKET,SO_ERROR,&v,&l)); printf("soerr=%d\n",v);
  R(shutdown(s,SHUT_WR)); R(recv(s,buf,10,0)); R(send(s,"x",1,0)); printf("sigpipe=%d\n",npipe); R(send(s,"x",1,MSG_NOSIGNAL));
  R(shutdown(s,5)); R(close(s)); R(close(s));
  puts("== EINTR");
  { struct sigaction sa={0}; sa.sa_handler=onalrm; sigaction(SIGALRM,&sa,0);
    s=conn(6001); alarm(1); R(recv(s,buf,10,0)); printf("alrm=%d\n",nalrm);
    sa.sa_flags=SA_RESTART; sigaction(SIGALRM,&sa,0);
    struct itimerval it={{0,0},{0,200000}}; setitimer(ITIMER_REAL,&it,0);
    int s4=conn(6004); double t0=now(); R(recv(s4,buf,10,0)); printf("alrm=%d restarted=%d\n",nalrm, now()-t0>0.4); close(s4);
    tv.tv_sec=1; tv.tv_usec=0; s4=conn(6004); R(setsockopt(s4,SOL_SOCKET,SO_RCVTIMEO,&tv,sizeof tv)); setitimer(ITIMER_REAL,&it,0); R(recv(s4,buf,10,0)); printf("alrm=%d\n",nalrm); close(s4);
    close(s); }
  puts("== peer close / reset");
  s=conn(6002); usleep(400000); R(recv(s,buf,100,0)); R(recv(s,buf,100,0)); R(send(s,"x",1,0)); usleep(100000); R(send(s,"x",1,0)); printf("sigpipe=%d\n",npipe); R(send(s,"x",1,0)); R(recv(s,buf,100,0)); l=4; R(getsockopt(s,SOL_SOCKET,SO_ERROR,&v,&l)); printf("soerr=%d\n",v); close(s);
  s=conn(6003); usleep(100000); R(recv(s,buf,100,0)); R(recv(s,buf,100,0)); R(send(s,"x",1,0)); close(s);
  puts("== nonblocking connect");
  s=socket(AF_INET,SOCK_STREAM|SOCK_NONBLOCK,0); a=A(PEER,6001);
  R(connect(s,(void*)&a,sizeof a)); R(recv(s,buf,10,0)); usleep(100000);
  l=4; R(getsockopt(s,SOL_SOCKET,SO_ERROR,&v,&l)); printf("soerr=%d\n",v);
  R(connect(s,(void*)&a,sizeof a)); R(connect(s,(void*)&a,sizeof a)); R(recv(s,buf,10,0)); R(send(s,"z",1,0)); usleep(50000); R(recv(s,buf,10,0));
  R(fcntl(s,F_GETFL)&O_NONBLOCK); v=0; R(ioctl(s,FIONBIO,&v)); R(fcntl(s,F_GETFL)&O_NONBLOCK); 
  tv.tv_sec=0; tv.tv_usec=100000; R(setsockopt(s,SOL_SOCKET,SO_RCVTIMEO,&tv,sizeof tv)); R(recv(s,buf,10,0)); close(s);
  puts("== refused");
  s=socket(AF_INET,SOCK_STREAM,0); a=A(PEER,6999); R(connect(s,(void*)&a,sizeof a)); R(connect(s,(void*)&a,sizeof a)); close(s);
  s=socket(AF_INET,SOCK_STREAM|SOCK_NONBLOCK,0); R(connect(s,(void*)&a,sizeof a)); usleep(100000); R(connect(s,(void*)&a,sizeof a)); R(connect(s,(void*)&a,sizeof a)); close(s);
  s=socket(AF_INET,SOCK_STREAM|SOCK_NONBLOCK,0); R(connect(s,(void*)&a,sizeof a)); usleep(100000); l=4; R(getsockopt(s,SOL_SOCKET,SO_ERROR,&v,&l)); printf("soerr=%d\n",v); R(connect(s,(void*)&a,sizeof a)); R(connect(s,(void*)&a,sizeof a)); close(s);
  puts("== bad args");
  s=socket(AF_INET,SOCK_STREAM,0); R(connect(s,(void*)1,16)); a=A(PEER,6001); R(connect(s,(void*)&a,8)); a.sin_family=AF_INET6; R(connect(s,(void*)&a,16)); a.sin_family=AF_INET;
  R(connect(s,(void*)&a,sizeof a)); R(send(s,(void*)1,10,0)); R(recv(s,(void*)1,10,MSG_DONTWAIT)); R(send(s,"abc",3,0)); usleep(50000); R(recv(s,(void*)1,10,0)); R(recv(s,buf,10,0));
  R(recv(s,buf,10,MSG_OOB)); close(s);
  puts("== dup");
  s=conn(6001); int d=dup(s); R(close(s)); R(send(d,"dup",3,0)); R(recv(d,buf,10,0)); int d2=dup2(d,20); R(d2); R(close(d)); R(send(20,"d2",2,0)); R(recv(20,buf,10,0)); R(dup2(20,20)); R(dup3(20,20,0)); R(close(20)); R(send(20,"x",1,0));
  puts("== sendfile");
  { FILE*f=tmpfile(); for(int i=0;i<100000;i++)fputc('a'+i%26,f); fflush(f); int ffd=fileno(f); s=conn(6005); off_t off=10; R(sendfile(s,ffd,&off,50000)); printf("off=%ld\n",(long)off); lseek(ffd,0,SEEK_SET); R(sendfile(s,ffd,NULL,1000)); R(lseek(ffd,0,SEEK_CUR)); close(s); fclose(f);}
  puts("== linger");
  s=conn(6001); { struct linger lg={1,0}; R(setsockopt(s,SOL_SOCKET,SO_LINGER,&lg,sizeof lg)); l=sizeof lg; R(getsockopt(s,SOL_SOCKET,SO_LINGER,&lg,&l)); printf("linger=%d,%d\n",lg.l_onoff,lg.l_linger);} R(close(s));
  s=conn(6001); { struct linger lg={1,2}; R(setsockopt(s,SOL_SOCKET,SO_LINGER,&lg,sizeof lg)); R(send(s,buf,1000,0)); double t0=now(); R(close(s)); printf("fast=%d\n", now()-t0<1);}
  puts("== done");
  return 0;
}
