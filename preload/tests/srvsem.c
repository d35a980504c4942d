#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#define R(expr) do{ errno=0; long _r=(long)(expr); printf("%-58s = %ld%s%s\n", #expr, _r, _r<0?" ":"", _r<0?strerrorname_np(errno):""); fflush(stdout);}while(0)
static struct sockaddr_in A(const char*ip,int port){struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port)};inet_pton(AF_INET,ip,&a.sin_addr);return a;}
static void *reader(void *p){ int s=*(int*)p; char b[100]; ssize_t n=recv(s,b,100,0); printf("thread recv=%zd\n",n); fflush(stdout); return 0;}
int main(int argc, char **argv){
  const char *me = argc>1?argv[1]:"10.66.0.3";
  char buf[256]; socklen_t l; struct sockaddr_in a;
  int ls=socket(AF_INET,SOCK_STREAM|SOCK_NONBLOCK,0); int one=1; R(setsockopt(ls,SOL_SOCKET,SO_REUSEADDR,&one,4));
  a=A("0.0.0.0",7001); R(bind(ls,(void*)&a,sizeof a)); R(bind(ls,(void*)&a,sizeof a)); R(accept(ls,0,0)); R(listen(ls,8));
  l=4; int v; R(getsockopt(ls,SOL_SOCKET,SO_ACCEPTCONN,&v,&l)); printf("acceptconn=%d\n",v);
  l=sizeof a; R(getsockname(ls,(void*)&a,&l)); printf("name=%s:%d\n",inet_ntoa(a.sin_addr),ntohs(a.sin_port));
  R(accept(ls,0,0)); R(accept4(ls,0,0,12345));
  printf("READY\n"); fflush(stdout);
  /* local client through the kernel (dual listen), from a forked child */
  pid_t pid=fork();
  if(pid==0){ usleep(200000); int c=socket(AF_INET,SOCK_STREAM,0); struct sockaddr_in b=A("127.0.0.1",7001); if(connect(c,(void*)&b,sizeof b)){perror("child connect");_exit(1);} write(c,"local",5); usleep(300000); _exit(0);}
  int fl=fcntl(ls,F_GETFL); fcntl(ls,F_SETFL,fl&~O_NONBLOCK);
  for(int i=0;i<2;i++){
    l=sizeof a; int c=accept4(ls,(void*)&a,&l,SOCK_NONBLOCK|SOCK_CLOEXEC);
    if(c<0){perror("accept4");return 1;}
    int local = a.sin_addr.s_addr==htonl(0x7f000001);
    printf("accepted %s len=%u nonblock=%d cloexec=%d\n", local?"local":"remote", l, !!(fcntl(c,F_GETFL)&O_NONBLOCK), !!(fcntl(c,F_GETFD)&FD_CLOEXEC));
    struct sockaddr_in n; socklen_t nl=sizeof n; getsockname(c,(void*)&n,&nl); printf("  local name %s port=%d\n", local?"lo":(n.sin_addr.s_addr==inet_addr(me)?"engine-ip":inet_ntoa(n.sin_addr)), ntohs(n.sin_port));
    fcntl(c,F_SETFL,0);
    ssize_t r=recv(c,buf,sizeof buf,MSG_WAITALL); printf("  recv=%zd\n", r);
    if(!local){ pthread_t t; pthread_create(&t,0,reader,&c); usleep(200000); R(send(c,"go",2,0)); pthread_join(t,0); }
    close(c);
  }
  waitpid(pid,0,0);
  R(shutdown(ls,SHUT_RDWR)); R(accept(ls,0,0));
  close(ls);
  /* bind to loopback: kernel */
  int k=socket(AF_INET,SOCK_STREAM,0); a=A("127.0.0.1",7002); R(bind(k,(void*)&a,sizeof a)); R(listen(k,1)); close(k);
  /* bind to a foreign address */
  k=socket(AF_INET,SOCK_STREAM,0); a=A("10.66.0.99",7002); R(bind(k,(void*)&a,sizeof a)); close(k);
  /* bind to the engine address / port in use */
  k=socket(AF_INET,SOCK_STREAM,0); a=A(me,7003); R(bind(k,(void*)&a,sizeof a)); R(listen(k,1));
  int k2=socket(AF_INET,SOCK_STREAM,0); R(bind(k2,(void*)&a,sizeof a)); close(k2); close(k);
  puts("DONE"); return 0;
}
